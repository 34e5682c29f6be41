//! The state store conformance suite: claimed features work, unclaimed ones are refused.
//!
//! Panics (as a test failure) with a message naming the check that failed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use outrigger_components::state::{
    Concurrency, DeleteRequest, GetRequest, SetRequest, StateError, StateStore,
    TransactionOperation, Ttl,
};

/// Runs every check against stores made by `make_store`. Keys are unique per run, so a
/// shared backend (one Redis server) can serve several runs.
pub async fn run_suite<F, Fut>(make_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn StateStore>>,
{
    let run = uuid::Uuid::new_v4().simple().to_string();
    let keys = Keys { run: &run };
    let store = make_store().await;
    basic_crud(&*store, &keys).await;
    binary_and_large_values(&*store, &keys).await;
    bulk_get(&*store, &keys).await;
    etag(&*store, &keys).await;
    first_write_race(Arc::clone(&store), &keys).await;
    etag_read_modify_write(Arc::clone(&store), &keys).await;
    transactions(&*store, &keys).await;
    ttl(&*store, &keys).await;
}

struct Keys<'a> {
    run: &'a str,
}

impl Keys<'_> {
    fn key(&self, name: &str) -> String {
        format!("conformance-{}-{name}", self.run)
    }
}

async fn get(store: &dyn StateStore, key: &str) -> Option<outrigger_components::state::StateItem> {
    store
        .get(GetRequest::new(key))
        .await
        .unwrap_or_else(|error| panic!("get {key}: unexpected error {error}"))
}

async fn set(store: &dyn StateStore, request: SetRequest) {
    let key = request.key.clone();
    store
        .set(request)
        .await
        .unwrap_or_else(|error| panic!("set {key}: unexpected error {error}"));
}

async fn basic_crud(store: &dyn StateStore, keys: &Keys<'_>) {
    let key = keys.key("crud");
    assert_eq!(
        get(store, &key).await,
        None,
        "a key never written must read as missing"
    );
    set(store, SetRequest::new(&key, "v1")).await;
    let item = get(store, &key)
        .await
        .expect("a written key must be readable");
    assert_eq!(
        item.value,
        Bytes::from("v1"),
        "get must return the value written"
    );
    set(store, SetRequest::new(&key, "v2")).await;
    assert_eq!(
        get(store, &key).await.map(|item| item.value),
        Some(Bytes::from("v2")),
        "last write wins"
    );
    store
        .delete(DeleteRequest::new(&key))
        .await
        .expect("delete an existing key");
    assert_eq!(
        get(store, &key).await,
        None,
        "a deleted key must read as missing"
    );
    store
        .delete(DeleteRequest::new(&key))
        .await
        .expect("deleting a missing key without an ETag succeeds");
}

async fn binary_and_large_values(store: &dyn StateStore, keys: &Keys<'_>) {
    let key = keys.key("binary");
    let binary = Bytes::from_static(&[0, 159, 146, 150, 255, b'\n', 0]);
    set(store, SetRequest::new(&key, binary.clone())).await;
    assert_eq!(
        get(store, &key).await.map(|item| item.value),
        Some(binary),
        "values must be binary-safe"
    );
    let large = Bytes::from(vec![b'x'; 1024 * 1024]);
    set(store, SetRequest::new(&key, large.clone())).await;
    assert_eq!(
        get(store, &key).await.map(|item| item.value.len()),
        Some(large.len()),
        "1 MiB value"
    );
    store
        .delete(DeleteRequest::new(&key))
        .await
        .expect("cleanup");
}

async fn bulk_get(store: &dyn StateStore, keys: &Keys<'_>) {
    let present = [keys.key("bulk-a"), keys.key("bulk-b")];
    for (index, key) in present.iter().enumerate() {
        set(store, SetRequest::new(key, format!("value-{index}"))).await;
    }
    let missing = keys.key("bulk-missing");
    let asked = vec![present[1].clone(), missing.clone(), present[0].clone()];
    let items = store.bulk_get(asked.clone()).await.expect("bulk get");
    let returned: Vec<_> = items.iter().map(|item| item.key.clone()).collect();
    assert_eq!(
        returned, asked,
        "bulk get answers every key, in the order asked"
    );
    let value = |index: usize| {
        items[index]
            .result
            .clone()
            .expect("no per-key error")
            .map(|item| item.value)
    };
    assert_eq!(value(0), Some(Bytes::from("value-1")));
    assert_eq!(value(1), None, "a missing key in a bulk get has no value");
    assert_eq!(value(2), Some(Bytes::from("value-0")));
}

fn is_etag_failure(error: &StateError) -> bool {
    matches!(
        error,
        StateError::EtagMismatch { .. } | StateError::InvalidEtag { .. }
    )
}

async fn etag(store: &dyn StateStore, keys: &Keys<'_>) {
    let key = keys.key("etag");
    if !store.features().etag {
        let refused = store.set(SetRequest::new(&key, "x").with_etag("1")).await;
        assert!(
            matches!(refused, Err(StateError::NotSupported { .. })),
            "a store that does not claim ETAG must refuse an ETag'd write, got {refused:?}"
        );
        return;
    }
    set(store, SetRequest::new(&key, "v1")).await;
    let first = get(store, &key)
        .await
        .and_then(|item| item.etag)
        .expect("ETAG store returns an etag");
    set(store, SetRequest::new(&key, "v2").with_etag(first.clone())).await;
    let second = get(store, &key)
        .await
        .and_then(|item| item.etag)
        .expect("etag after update");
    assert_ne!(first, second, "a write must change the etag");

    let stale = store
        .set(SetRequest::new(&key, "v3").with_etag(first.clone()))
        .await;
    assert!(
        matches!(stale, Err(StateError::EtagMismatch { .. })),
        "stale etag on set: {stale:?}"
    );
    let garbage = store
        .set(SetRequest::new(&key, "v3").with_etag("not-an-etag"))
        .await;
    assert!(
        garbage.as_ref().is_err_and(is_etag_failure),
        "garbage etag on set: {garbage:?}"
    );
    assert_eq!(
        get(store, &key).await.map(|item| item.value),
        Some(Bytes::from("v2")),
        "a refused write must not change the value"
    );

    let stale_delete = store
        .delete(DeleteRequest::new(&key).with_etag(first))
        .await;
    assert!(
        matches!(stale_delete, Err(StateError::EtagMismatch { .. })),
        "stale etag on delete: {stale_delete:?}"
    );
    assert!(
        get(store, &key).await.is_some(),
        "a refused delete must keep the item"
    );
    store
        .delete(DeleteRequest::new(&key).with_etag(second))
        .await
        .expect("delete with the current etag");
    assert_eq!(get(store, &key).await, None);

    let missing = store
        .set(SetRequest::new(keys.key("etag-missing"), "x").with_etag(first_etag_like(&key)))
        .await;
    assert!(
        missing.as_ref().is_err_and(is_etag_failure),
        "an etag on a missing key must fail: {missing:?}"
    );

    let new_key = keys.key("first-write");
    let first_write = SetRequest::new(&new_key, "a").with_concurrency(Concurrency::FirstWrite);
    set(store, first_write.clone()).await;
    let again = store.set(first_write).await;
    assert!(
        matches!(again, Err(StateError::EtagMismatch { .. })),
        "first-write without an etag on an existing key must fail: {again:?}"
    );
}

/// An etag that is well-formed for integer-versioned stores but belongs to no item.
fn first_etag_like(_key: &str) -> String {
    "987654321".to_string()
}

async fn first_write_race(store: Arc<dyn StateStore>, keys: &Keys<'_>) {
    if !store.features().etag {
        return;
    }
    let key = keys.key("race");
    let attempts = (0..16).map(|writer| {
        let store = Arc::clone(&store);
        let request = SetRequest::new(&key, format!("writer-{writer}"))
            .with_concurrency(Concurrency::FirstWrite);
        tokio::spawn(async move { store.set(request).await })
    });
    let results = futures::future::join_all(attempts).await;
    let winners = results
        .into_iter()
        .filter(|result| matches!(result, Ok(Ok(()))))
        .count();
    assert_eq!(
        winners, 1,
        "exactly one concurrent first-write of a new key must win"
    );
}

async fn etag_read_modify_write(store: Arc<dyn StateStore>, keys: &Keys<'_>) {
    if !store.features().etag {
        return;
    }
    let key = keys.key("counter");
    set(&*store, SetRequest::new(&key, "0")).await;
    let writers = (0..8).map(|_| {
        let store = Arc::clone(&store);
        let key = key.clone();
        tokio::spawn(async move {
            loop {
                let item = store
                    .get(GetRequest::new(&key))
                    .await
                    .expect("get")
                    .expect("exists");
                let count: u64 = std::str::from_utf8(&item.value)
                    .expect("utf8")
                    .parse()
                    .expect("number");
                let next = SetRequest::new(&key, (count + 1).to_string())
                    .with_etag(item.etag.clone().expect("etag"));
                match store.set(next).await {
                    Ok(()) => return,
                    Err(StateError::EtagMismatch { .. }) => continue,
                    Err(error) => panic!("read-modify-write: {error}"),
                }
            }
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.expect("writer task");
    }
    let value = get(&*store, &key).await.expect("counter").value;
    assert_eq!(
        value,
        Bytes::from("8"),
        "etag-guarded increments must not be lost"
    );
}

async fn transactions(store: &dyn StateStore, keys: &Keys<'_>) {
    let (a, b, c) = (keys.key("tx-a"), keys.key("tx-b"), keys.key("tx-c"));
    if !store.features().transactional {
        let refused = store
            .transact(vec![TransactionOperation::Upsert(SetRequest::new(&a, "1"))])
            .await;
        assert!(
            matches!(refused, Err(StateError::NotSupported { .. })),
            "a store that does not claim TRANSACTIONAL must refuse transactions, got {refused:?}"
        );
        return;
    }
    set(store, SetRequest::new(&c, "old")).await;
    store
        .transact(vec![
            TransactionOperation::Upsert(SetRequest::new(&a, "1")),
            TransactionOperation::Upsert(SetRequest::new(&b, "2")),
            TransactionOperation::Delete(DeleteRequest::new(&c)),
        ])
        .await
        .expect("transaction applies");
    assert_eq!(
        get(store, &a).await.map(|item| item.value),
        Some(Bytes::from("1"))
    );
    assert_eq!(
        get(store, &b).await.map(|item| item.value),
        Some(Bytes::from("2"))
    );
    assert_eq!(get(store, &c).await, None, "delete inside a transaction");

    if store.features().etag {
        let current = get(store, &a)
            .await
            .and_then(|item| item.etag)
            .expect("etag");
        let failed = store
            .transact(vec![
                TransactionOperation::Upsert(SetRequest::new(&a, "changed").with_etag(current)),
                TransactionOperation::Delete(DeleteRequest::new(&b)),
                TransactionOperation::Upsert(
                    SetRequest::new(&c, "new").with_etag(first_etag_like(&c)),
                ),
            ])
            .await;
        assert!(
            failed.as_ref().is_err_and(is_etag_failure),
            "a stale etag fails the transaction: {failed:?}"
        );
        assert_eq!(
            get(store, &a).await.map(|item| item.value),
            Some(Bytes::from("1")),
            "a failed transaction applies nothing (first step rolled back)"
        );
        assert!(
            get(store, &b).await.is_some(),
            "a failed transaction applies nothing (delete kept)"
        );
        assert_eq!(
            get(store, &c).await,
            None,
            "a failed transaction applies nothing (no insert)"
        );
    }
}

async fn ttl(store: &dyn StateStore, keys: &Keys<'_>) {
    let key = keys.key("ttl");
    let short = SetRequest::new(&key, "brief").with_ttl(Ttl::After(Duration::from_secs(1)));
    if !store.features().ttl {
        let refused = store.set(short).await;
        assert!(
            matches!(refused, Err(StateError::NotSupported { .. })),
            "a store that does not claim TTL must refuse a TTL, got {refused:?}"
        );
        return;
    }
    set(store, short).await;
    let item = get(store, &key).await.expect("readable before expiry");
    assert!(
        item.expires_at.is_some(),
        "a TTL'd item reports its expiry time"
    );
    let forever = keys.key("ttl-never");
    set(
        store,
        SetRequest::new(&forever, "stays").with_ttl(Ttl::Never),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        get(store, &key).await,
        None,
        "an item must be gone after its TTL"
    );
    let kept = get(store, &forever)
        .await
        .expect("ttlInSeconds -1 never expires");
    assert_eq!(kept.expires_at, None);
}

#[cfg(test)]
mod tests {
    //! The suite must also hold stores to what they do not claim: a bare store that
    //! refuses every optional feature passes, and one that over-claims fails.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use outrigger_components::state::{StateFeatures, StateItem};

    use super::*;

    #[derive(Default)]
    struct BareStore {
        claim_transactions: bool,
        data: Mutex<HashMap<String, Bytes>>,
    }

    #[async_trait]
    impl StateStore for BareStore {
        fn features(&self) -> StateFeatures {
            StateFeatures {
                transactional: self.claim_transactions,
                ..StateFeatures::default()
            }
        }
        async fn get(&self, request: GetRequest) -> Result<Option<StateItem>, StateError> {
            Ok(self
                .data
                .lock()
                .expect("lock")
                .get(&request.key)
                .map(|value| StateItem {
                    value: value.clone(),
                    etag: None,
                    expires_at: None,
                }))
        }
        async fn set(&self, request: SetRequest) -> Result<(), StateError> {
            if request.etag.is_some() {
                return Err(StateError::NotSupported { feature: "ETags" });
            }
            if matches!(request.ttl, Some(Ttl::After(_))) {
                return Err(StateError::NotSupported { feature: "TTL" });
            }
            self.data
                .lock()
                .expect("lock")
                .insert(request.key, request.value);
            Ok(())
        }
        async fn delete(&self, request: DeleteRequest) -> Result<(), StateError> {
            self.data.lock().expect("lock").remove(&request.key);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_store_claiming_nothing_passes_by_refusing() {
        run_suite(|| async { Arc::new(BareStore::default()) as Arc<dyn StateStore> }).await;
    }

    #[tokio::test]
    #[should_panic(expected = "transaction")]
    async fn a_store_claiming_what_it_lacks_fails() {
        run_suite(|| async {
            Arc::new(BareStore {
                claim_transactions: true,
                ..BareStore::default()
            }) as Arc<dyn StateStore>
        })
        .await;
    }
}
