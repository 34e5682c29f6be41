//! `state.in-memory`: a process-local state store with ETags, TTL, transactions and bulk get.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use outrigger_components::state::{
    BulkGetItem, Concurrency, DeleteRequest, GetRequest, SetRequest, StateError, StateFeatures,
    StateItem, StateStore, TransactionOperation, Ttl,
};

/// How often expired items are swept out, so memory does not grow with keys nobody reads.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Entry {
    value: Bytes,
    version: u64,
    expires_at: Option<(Instant, SystemTime)>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|(deadline, _)| deadline > now)
    }
}

#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    /// Versions come from one counter, so a deleted and re-created key never reuses an ETag.
    last_version: u64,
}

impl Table {
    fn live(&self, key: &str, now: Instant) -> Option<&Entry> {
        self.entries.get(key).filter(|entry| entry.is_live(now))
    }

    fn next_version(&mut self) -> u64 {
        self.last_version += 1;
        self.last_version
    }
}

/// The `state.in-memory` store. Data lives as long as the component instance.
pub struct InMemoryStateStore {
    table: Arc<Mutex<Table>>,
}

impl InMemoryStateStore {
    /// Creates an empty store and starts its expiry sweeper on the current Tokio runtime.
    pub fn new() -> Self {
        let table = Arc::new(Mutex::new(Table::default()));
        spawn_sweeper(Arc::downgrade(&table));
        Self { table }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave a half-applied write: every write
        // validates first and mutates last, so the data is consistent even if poisoned.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for InMemoryStateStore {
    fn default() -> Self {
        Self::new()
    }
}

fn spawn_sweeper(table: Weak<Mutex<Table>>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                ticker.tick().await;
                let Some(table) = table.upgrade() else { return };
                let now = Instant::now();
                table
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .retain(|_, entry| entry.is_live(now));
            }
        });
    }
}

fn parse_etag(key: &str, etag: &str) -> Result<u64, StateError> {
    etag.parse().map_err(|_| StateError::InvalidEtag {
        key: key.to_string(),
        etag: etag.to_string(),
        reason: "in-memory ETags are integers".to_string(),
    })
}

/// Checks a write's ETag / first-write condition against the current entry.
fn check_write(
    key: &str,
    etag: Option<&str>,
    concurrency: Concurrency,
    current: Option<&Entry>,
) -> Result<(), StateError> {
    let mismatch = || StateError::EtagMismatch {
        key: key.to_string(),
    };
    match etag.filter(|etag| !etag.is_empty()) {
        Some(etag) => {
            let expected = parse_etag(key, etag)?;
            match current {
                Some(entry) if entry.version == expected => Ok(()),
                _ => Err(mismatch()),
            }
        }
        None if concurrency == Concurrency::FirstWrite && current.is_some() => Err(mismatch()),
        None => Ok(()),
    }
}

fn expiry(ttl: Option<Ttl>, now: Instant) -> Option<(Instant, SystemTime)> {
    match ttl {
        Some(Ttl::After(duration)) => Some((now + duration, SystemTime::now() + duration)),
        Some(Ttl::Never) | None => None,
    }
}

fn item(entry: &Entry) -> StateItem {
    StateItem {
        value: entry.value.clone(),
        etag: Some(entry.version.to_string()),
        expires_at: entry.expires_at.map(|(_, wall)| wall),
    }
}

#[async_trait]
impl StateStore for InMemoryStateStore {
    fn features(&self) -> StateFeatures {
        StateFeatures {
            etag: true,
            transactional: true,
            ttl: true,
            bulk_get: true,
            query: false,
        }
    }

    async fn get(&self, request: GetRequest) -> Result<Option<StateItem>, StateError> {
        Ok(self.lock().live(&request.key, Instant::now()).map(item))
    }

    async fn set(&self, request: SetRequest) -> Result<(), StateError> {
        let now = Instant::now();
        let mut table = self.lock();
        check_write(
            &request.key,
            request.etag.as_deref(),
            request.concurrency,
            table.live(&request.key, now),
        )?;
        let version = table.next_version();
        table.entries.insert(
            request.key,
            Entry {
                value: request.value,
                version,
                expires_at: expiry(request.ttl, now),
            },
        );
        Ok(())
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError> {
        let now = Instant::now();
        let mut table = self.lock();
        check_write(
            &request.key,
            request.etag.as_deref(),
            Concurrency::LastWrite,
            table.live(&request.key, now),
        )?;
        table.entries.remove(&request.key);
        Ok(())
    }

    async fn bulk_get(&self, keys: Vec<String>) -> Result<Vec<BulkGetItem>, StateError> {
        let now = Instant::now();
        let table = self.lock();
        Ok(keys
            .into_iter()
            .map(|key| BulkGetItem {
                result: Ok(table.live(&key, now).map(item)),
                key,
            })
            .collect())
    }

    async fn transact(&self, operations: Vec<TransactionOperation>) -> Result<(), StateError> {
        let now = Instant::now();
        let mut table = self.lock();
        // Validate every step against the state the earlier steps would leave, then apply.
        let mut pending: HashMap<String, Option<Entry>> = HashMap::new();
        let mut version = table.last_version;
        for operation in &operations {
            let key = operation.key();
            let current = match pending.get(key) {
                Some(staged) => staged.as_ref(),
                None => table.live(key, now),
            };
            match operation {
                TransactionOperation::Upsert(request) => {
                    check_write(key, request.etag.as_deref(), request.concurrency, current)?;
                    version += 1;
                    pending.insert(
                        key.to_string(),
                        Some(Entry {
                            value: request.value.clone(),
                            version,
                            expires_at: expiry(request.ttl, now),
                        }),
                    );
                }
                TransactionOperation::Delete(request) => {
                    check_write(
                        key,
                        request.etag.as_deref(),
                        Concurrency::LastWrite,
                        current,
                    )?;
                    pending.insert(key.to_string(), None);
                }
            }
        }
        table.last_version = version;
        for (key, staged) in pending {
            match staged {
                Some(entry) => {
                    table.entries.insert(key, entry);
                }
                None => {
                    table.entries.remove(&key);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_state_conformance() {
        outrigger_conformance::state::run_suite(|| async {
            Arc::new(InMemoryStateStore::new()) as Arc<dyn StateStore>
        })
        .await;
    }
}
