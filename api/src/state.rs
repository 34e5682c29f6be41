//! The state building block as both servers see it: store lookup, key prefixes, option
//! checks, and calls into the store, all protocol-neutral.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use outrigger_components::state::{
    Concurrency, Consistency, DeleteRequest, GetRequest, SetRequest, StateError, StateItem,
    TransactionOperation, ttl_from_metadata,
};
use outrigger_components::{ComponentRegistry, RegisteredStateStore};

use crate::error::{ApiError, StateOperation};
use crate::resiliency::{PolicyError, Resiliency};

/// One item to save, with the key the app uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SaveItem {
    pub key: String,
    pub value: Bytes,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub consistency: Consistency,
    pub metadata: HashMap<String, String>,
}

/// One item to delete, with the key the app uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteItem {
    pub key: String,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub consistency: Consistency,
    pub metadata: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TransactionStep {
    Upsert(SaveItem),
    Delete(DeleteItem),
}

/// A value read back, with the key the app uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadItem {
    pub value: Bytes,
    pub etag: Option<String>,
    /// Dapr's response metadata (`ttlExpireTime`).
    pub metadata: HashMap<String, String>,
}

/// One key's outcome in a bulk get.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkReadItem {
    pub key: String,
    pub result: Result<Option<ReadItem>, String>,
}

/// Parses Dapr's `concurrency` text (`first-write`, `last-write`, or empty).
pub fn parse_concurrency(text: &str) -> Result<Concurrency, ApiError> {
    match text {
        "" | "last-write" => Ok(Concurrency::LastWrite),
        "first-write" => Ok(Concurrency::FirstWrite),
        other => Err(ApiError::malformed(format!(
            "unrecognized concurrency model '{other}'; expected first-write or last-write"
        ))),
    }
}

/// Parses Dapr's `consistency` text (`eventual`, `strong`, or empty).
pub fn parse_consistency(text: &str) -> Result<Consistency, ApiError> {
    match text {
        "" | "eventual" => Ok(Consistency::Eventual),
        "strong" => Ok(Consistency::Strong),
        other => Err(ApiError::malformed(format!(
            "unrecognized consistency model '{other}'; expected eventual or strong"
        ))),
    }
}

#[derive(Clone)]
pub struct StateApi {
    registry: Arc<ComponentRegistry>,
    resiliency: Arc<Resiliency>,
}

/// Backend failures and timeouts may pass on retry; conflicts and bad requests will not.
fn is_retriable(error: &StateError) -> bool {
    matches!(error, StateError::Backend(_) | StateError::Timeout(_))
}

impl StateApi {
    pub fn new(registry: Arc<ComponentRegistry>, resiliency: Arc<Resiliency>) -> Self {
        Self {
            registry,
            resiliency,
        }
    }

    /// Calls the store under the component's outbound resiliency policy.
    async fn call<T, F, Fut>(&self, store_name: &str, call: F) -> Result<T, StateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StateError>>,
    {
        self.resiliency
            .outbound(store_name)
            .run(is_retriable, call)
            .await
            .map_err(|error| match error {
                PolicyError::Call(error) => error,
                PolicyError::Timeout(limit) => StateError::Timeout(limit),
                PolicyError::BreakerOpen(name) => {
                    StateError::Backend(format!("circuit breaker {name} is open"))
                }
            })
    }

    /// Finds a store by name, with Dapr's two distinct failures.
    pub fn store(&self, name: &str) -> Result<Arc<RegisteredStateStore>, ApiError> {
        self.registry.state_store(name).ok_or_else(|| {
            if self.registry.has_state_stores() {
                ApiError::StateStoreNotFound {
                    name: name.to_string(),
                }
            } else {
                ApiError::StateStoresNotConfigured {
                    name: name.to_string(),
                }
            }
        })
    }

    pub async fn get(
        &self,
        store_name: &str,
        key: &str,
        consistency: Consistency,
        metadata: HashMap<String, String>,
    ) -> Result<Option<ReadItem>, ApiError> {
        let store = self.store(store_name)?;
        let stored_key = qualify(&store, key)?;
        let request = GetRequest {
            key: stored_key,
            consistency,
            metadata,
        };
        self.call(store_name, || store.store.get(request.clone()))
            .await
            .map(|item| item.map(read_item))
            .map_err(|error| ApiError::state(StateOperation::Get, store_name, Some(key), error))
    }

    pub async fn bulk_get(
        &self,
        store_name: &str,
        keys: Vec<String>,
    ) -> Result<Vec<BulkReadItem>, ApiError> {
        let store = self.store(store_name)?;
        let stored_keys = keys
            .iter()
            .map(|key| qualify(&store, key))
            .collect::<Result<Vec<_>, _>>()?;
        let items = self
            .call(store_name, || store.store.bulk_get(stored_keys.clone()))
            .await
            .map_err(|error| ApiError::state(StateOperation::BulkGet, store_name, None, error))?;
        Ok(items
            .into_iter()
            .zip(keys)
            .map(|(item, key)| BulkReadItem {
                key,
                result: item.result.map(|found| found.map(read_item)),
            })
            .collect())
    }

    /// Saves items in order, stopping at the first failure, as Dapr's bulk set does.
    pub async fn save(&self, store_name: &str, items: Vec<SaveItem>) -> Result<(), ApiError> {
        let store = self.store(store_name)?;
        let requests = items
            .into_iter()
            .map(|item| set_request(&store, item))
            .collect::<Result<Vec<_>, _>>()?;
        for request in requests {
            self.call(store_name, || store.store.set(request.clone()))
                .await
                .map_err(|error| ApiError::state(StateOperation::Save, store_name, None, error))?;
        }
        Ok(())
    }

    pub async fn delete(&self, store_name: &str, item: DeleteItem) -> Result<(), ApiError> {
        let store = self.store(store_name)?;
        let key = item.key.clone();
        let request = delete_request(&store, item)?;
        self.call(store_name, || store.store.delete(request.clone()))
            .await
            .map_err(|error| ApiError::state(StateOperation::Delete, store_name, Some(&key), error))
    }

    pub async fn delete_bulk(
        &self,
        store_name: &str,
        items: Vec<DeleteItem>,
    ) -> Result<(), ApiError> {
        let store = self.store(store_name)?;
        let requests = items
            .into_iter()
            .map(|item| delete_request(&store, item))
            .collect::<Result<Vec<_>, _>>()?;
        for request in requests {
            self.call(store_name, || store.store.delete(request.clone()))
                .await
                .map_err(|error| {
                    ApiError::state(StateOperation::BulkDelete, store_name, None, error)
                })?;
        }
        Ok(())
    }

    pub async fn transact(
        &self,
        store_name: &str,
        steps: Vec<TransactionStep>,
    ) -> Result<(), ApiError> {
        let store = self.store(store_name)?;
        if !store.store.features().transactional {
            return Err(ApiError::StateNotSupported {
                store: store_name.to_string(),
                feature: "transactions",
            });
        }
        let operations = steps
            .into_iter()
            .map(|step| match step {
                TransactionStep::Upsert(item) => {
                    set_request(&store, item).map(TransactionOperation::Upsert)
                }
                TransactionStep::Delete(item) => {
                    delete_request(&store, item).map(TransactionOperation::Delete)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if operations.is_empty() {
            return Ok(());
        }
        self.call(store_name, || store.store.transact(operations.clone()))
            .await
            .map_err(|error| ApiError::state(StateOperation::Transaction, store_name, None, error))
    }
}

fn qualify(store: &RegisteredStateStore, key: &str) -> Result<String, ApiError> {
    if key.is_empty() {
        return Err(ApiError::malformed("state key cannot be empty"));
    }
    store
        .key_prefix
        .qualify(key)
        .map_err(|_| ApiError::IllegalKey {
            key: key.to_string(),
        })
}

fn non_empty(etag: Option<String>) -> Option<String> {
    etag.filter(|etag| !etag.is_empty())
}

fn set_request(store: &RegisteredStateStore, item: SaveItem) -> Result<SetRequest, ApiError> {
    let features = store.store.features();
    let key = qualify(store, &item.key)?;
    let etag = non_empty(item.etag);
    let ttl = ttl_from_metadata(&item.metadata)
        .map_err(|error| ApiError::malformed(error.to_string()))?;
    if etag.is_some() && !features.etag {
        return Err(ApiError::StateNotSupported {
            store: store.info.name.clone(),
            feature: "ETags",
        });
    }
    if ttl.is_some() && !features.ttl {
        return Err(ApiError::StateNotSupported {
            store: store.info.name.clone(),
            feature: "TTL",
        });
    }
    Ok(SetRequest {
        key,
        value: item.value,
        etag,
        concurrency: item.concurrency,
        consistency: item.consistency,
        ttl,
        metadata: item.metadata,
    })
}

fn delete_request(
    store: &RegisteredStateStore,
    item: DeleteItem,
) -> Result<DeleteRequest, ApiError> {
    let key = qualify(store, &item.key)?;
    let etag = non_empty(item.etag);
    if etag.is_some() && !store.store.features().etag {
        return Err(ApiError::StateNotSupported {
            store: store.info.name.clone(),
            feature: "ETags",
        });
    }
    Ok(DeleteRequest {
        key,
        etag,
        concurrency: item.concurrency,
        consistency: item.consistency,
        metadata: item.metadata,
    })
}

fn read_item(item: StateItem) -> ReadItem {
    let mut metadata = HashMap::new();
    if let Some(expires_at) = item.expires_at {
        metadata.insert("ttlExpireTime".to_string(), rfc3339(expires_at));
    }
    ReadItem {
        value: item.value,
        etag: item.etag,
        metadata,
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}
