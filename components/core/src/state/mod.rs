//! The state building block's contract: what every state store offers and how it fails.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

pub mod keys;

/// What a state store can do beyond plain get / set / delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateFeatures {
    /// Optimistic concurrency with ETags and first-write.
    pub etag: bool,
    /// All-or-nothing multi-key transactions.
    pub transactional: bool,
    /// Per-item expiry from `ttlInSeconds`.
    pub ttl: bool,
    /// A native bulk get (otherwise the runtime issues single gets).
    pub bulk_get: bool,
    /// The query API.
    pub query: bool,
}

impl StateFeatures {
    /// The capability names Dapr reports in its metadata API for these features.
    pub fn dapr_capabilities(&self) -> Vec<String> {
        [
            (self.etag, "ETAG"),
            (self.transactional, "TRANSACTIONAL"),
            (self.ttl, "TTL"),
            (self.query, "QUERY_API"),
        ]
        .into_iter()
        .filter(|(claimed, _)| *claimed)
        .map(|(_, name)| name.to_string())
        .collect()
    }
}

/// Dapr's `concurrency` option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Concurrency {
    /// Without an ETag, write only when the key does not exist yet; with one, only when it matches.
    FirstWrite,
    /// Without an ETag, always write; with one, only when it matches.
    #[default]
    LastWrite,
}

/// Dapr's `consistency` option; single-node stores treat both the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    #[default]
    Eventual,
    Strong,
}

/// How long an item lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Expire after this long.
    After(Duration),
    /// Never expire, even when the store has a default TTL (`ttlInSeconds: -1`).
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GetRequest {
    pub key: String,
    pub consistency: Consistency,
    pub metadata: HashMap<String, String>,
}

impl GetRequest {
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            consistency: Consistency::default(),
            metadata: HashMap::new(),
        }
    }
}

/// A stored value with its version.
#[derive(Debug, Clone, PartialEq)]
pub struct StateItem {
    pub value: Bytes,
    pub etag: Option<String>,
    /// When the item expires, for stores that support TTL.
    pub expires_at: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SetRequest {
    pub key: String,
    pub value: Bytes,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub consistency: Consistency,
    /// `None` uses the store's default TTL, if it has one.
    pub ttl: Option<Ttl>,
    pub metadata: HashMap<String, String>,
}

impl SetRequest {
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            etag: None,
            concurrency: Concurrency::default(),
            consistency: Consistency::default(),
            ttl: None,
            metadata: HashMap::new(),
        }
    }

    pub fn with_etag(mut self, etag: impl Into<String>) -> Self {
        self.etag = Some(etag.into());
        self
    }

    pub fn with_concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteRequest {
    pub key: String,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub consistency: Consistency,
    pub metadata: HashMap<String, String>,
}

impl DeleteRequest {
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            etag: None,
            concurrency: Concurrency::default(),
            consistency: Consistency::default(),
            metadata: HashMap::new(),
        }
    }

    pub fn with_etag(mut self, etag: impl Into<String>) -> Self {
        self.etag = Some(etag.into());
        self
    }
}

/// One step of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactionOperation {
    Upsert(SetRequest),
    Delete(DeleteRequest),
}

impl TransactionOperation {
    pub fn key(&self) -> &str {
        match self {
            Self::Upsert(request) => &request.key,
            Self::Delete(request) => &request.key,
        }
    }
}

/// The outcome for one key of a bulk get.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkGetItem {
    pub key: String,
    /// Result for this key: `Ok(None)` when it does not exist.
    pub result: Result<Option<StateItem>, String>,
}

/// How a state operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error("the etag for key {key:?} does not match the stored version")]
    EtagMismatch { key: String },
    #[error("invalid etag {etag:?} for key {key:?}: {reason}")]
    InvalidEtag {
        key: String,
        etag: String,
        reason: String,
    },
    #[error("the state store does not support {feature}")]
    NotSupported { feature: &'static str },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Backend(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// The contract every state store implements. Keys arrive already qualified with the
/// Dapr key prefix (see [`keys::KeyPrefix`]); stores treat them as opaque strings.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    fn features(&self) -> StateFeatures;

    /// `Ok(None)` when the key does not exist (or has expired).
    async fn get(&self, request: GetRequest) -> Result<Option<StateItem>, StateError>;

    async fn set(&self, request: SetRequest) -> Result<(), StateError>;

    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError>;

    /// Reads many keys; stores with a native bulk read override this.
    async fn bulk_get(&self, keys: Vec<String>) -> Result<Vec<BulkGetItem>, StateError> {
        let mut items = Vec::with_capacity(keys.len());
        for key in keys {
            let result = self
                .get(GetRequest::new(key.clone()))
                .await
                .map_err(|error| error.to_string());
            items.push(BulkGetItem { key, result });
        }
        Ok(items)
    }

    /// Applies all operations or none. Stores that do not claim `transactional` refuse.
    async fn transact(&self, _operations: Vec<TransactionOperation>) -> Result<(), StateError> {
        Err(StateError::NotSupported {
            feature: "transactions",
        })
    }
}

/// Parses Dapr's `ttlInSeconds` request metadata: a positive number of seconds, or -1 for never.
pub fn ttl_from_metadata(metadata: &HashMap<String, String>) -> Result<Option<Ttl>, StateError> {
    let Some(text) = metadata.get("ttlInSeconds") else {
        return Ok(None);
    };
    ttl_from_seconds_text(text).map_err(StateError::InvalidRequest)
}

/// Parses a `ttlInSeconds` value (request metadata or a store's default).
pub fn ttl_from_seconds_text(text: &str) -> Result<Option<Ttl>, String> {
    let seconds: i64 = text.trim().parse().map_err(|_| {
        format!("ttlInSeconds must be an integer number of seconds or -1, got {text:?}")
    })?;
    match seconds {
        -1 => Ok(Some(Ttl::Never)),
        0 => Ok(None),
        seconds if seconds > 0 => Ok(Some(Ttl::After(Duration::from_secs(
            seconds.unsigned_abs(),
        )))),
        _ => Err(format!(
            "ttlInSeconds must be a positive number of seconds or -1, got {seconds}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_metadata_parses_dapr_values() {
        let metadata =
            |value: &str| HashMap::from([("ttlInSeconds".to_string(), value.to_string())]);
        assert_eq!(ttl_from_metadata(&HashMap::new()), Ok(None));
        assert_eq!(ttl_from_metadata(&metadata("-1")), Ok(Some(Ttl::Never)));
        assert_eq!(
            ttl_from_metadata(&metadata("30")),
            Ok(Some(Ttl::After(Duration::from_secs(30))))
        );
        assert!(ttl_from_metadata(&metadata("-5")).is_err());
        assert!(ttl_from_metadata(&metadata("soon")).is_err());
    }

    #[test]
    fn capabilities_use_dapr_names_for_claimed_features_only() {
        let features = StateFeatures {
            etag: true,
            ttl: true,
            ..StateFeatures::default()
        };
        assert_eq!(features.dapr_capabilities(), vec!["ETAG", "TTL"]);
    }
}
