//! `state.redis`: Dapr's Redis state store layout with atomic ETag, first-write, TTL and transactions.

mod scripts;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use outrigger_components::state::{
    BulkGetItem, Concurrency, DeleteRequest, GetRequest, SetRequest, StateError, StateFeatures,
    StateItem, StateStore, TransactionOperation, Ttl,
};
use outrigger_components::{ComponentMetadata, InitError};
pub use outrigger_redis_common::RedisSettings;
use redis::aio::ConnectionManager;

/// The `state.redis` store over one or more multiplexed connections.
pub struct RedisStateStore {
    connections: Vec<ConnectionManager>,
    next_connection: AtomicUsize,
    settings: RedisSettings,
}

impl RedisStateStore {
    /// Reads the component metadata and connects; fails if Redis does not answer `PING`.
    pub async fn from_metadata(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        Self::connect(RedisSettings::from_metadata(metadata)?).await
    }

    pub async fn connect(settings: RedisSettings) -> Result<Self, InitError> {
        let client = outrigger_redis_common::client(&settings)?;
        let response_timeout = settings.read_timeout.max(settings.write_timeout);
        let mut connections = Vec::with_capacity(settings.pool_size);
        for _ in 0..settings.pool_size {
            connections
                .push(outrigger_redis_common::connect(&client, &settings, response_timeout).await?);
        }
        Ok(Self {
            connections,
            next_connection: AtomicUsize::new(0),
            settings,
        })
    }

    fn connection(&self) -> ConnectionManager {
        let index = self.next_connection.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[index].clone()
    }

    /// Runs a Redis call under a deadline, so an unreachable server fails the call instead of hanging it.
    async fn bounded<T>(
        &self,
        deadline: Duration,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        match tokio::time::timeout(deadline, call).await {
            Ok(result) => result.map_err(backend_error),
            Err(_) => Err(StateError::Timeout(deadline)),
        }
    }

    fn ttl_arg(&self, ttl: Option<Ttl>) -> String {
        match ttl.or(self.settings.default_ttl) {
            None => String::new(),
            Some(Ttl::Never) => "-1".to_string(),
            Some(Ttl::After(duration)) => duration.as_secs().max(1).to_string(),
        }
    }

    async fn read(&self, key: &str) -> Result<Option<StateItem>, StateError> {
        let mut connection = self.connection();
        let invocation = scripts::GET.key(key);
        let reply: Vec<redis::Value> = self
            .bounded(
                self.settings.read_timeout,
                invocation.invoke_async(&mut connection),
            )
            .await?;
        parse_item(key, reply)
    }
}

fn backend_error(error: redis::RedisError) -> StateError {
    if error.code() == Some(scripts::ETAG_MISMATCH) {
        StateError::EtagMismatch {
            key: error.detail().unwrap_or_default().to_string(),
        }
    } else {
        StateError::Backend(format!("redis: {error}"))
    }
}

fn parse_etag(key: &str, etag: Option<&str>) -> Result<String, StateError> {
    match etag {
        None => Ok(String::new()),
        Some(etag) => match etag.parse::<u64>() {
            Ok(version) => Ok(version.to_string()),
            Err(_) => Err(StateError::InvalidEtag {
                key: key.to_string(),
                etag: etag.to_string(),
                reason: "Redis ETags are integers".to_string(),
            }),
        },
    }
}

fn first_write_flag(concurrency: Concurrency) -> &'static str {
    match concurrency {
        Concurrency::FirstWrite => "1",
        Concurrency::LastWrite => "0",
    }
}

fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => Some(text.clone()),
        redis::Value::Int(number) => Some(number.to_string()),
        _ => None,
    }
}

fn parse_item(key: &str, reply: Vec<redis::Value>) -> Result<Option<StateItem>, StateError> {
    let malformed = || StateError::Backend(format!("redis: unexpected reply reading {key}"));
    let mut fields = reply.into_iter();
    let Some(data) = fields.next() else {
        return Ok(None);
    };
    let value = match data {
        redis::Value::BulkString(bytes) => Bytes::from(bytes),
        redis::Value::SimpleString(text) => Bytes::from(text),
        _ => return Err(malformed()),
    };
    let etag = fields
        .next()
        .as_ref()
        .and_then(text)
        .filter(|etag| !etag.is_empty());
    let pttl = match fields.next() {
        Some(redis::Value::Int(millis)) => millis,
        _ => return Err(malformed()),
    };
    let expires_at = u64::try_from(pttl)
        .ok()
        .map(|millis| SystemTime::now() + Duration::from_millis(millis));
    Ok(Some(StateItem {
        value,
        etag,
        expires_at,
    }))
}

#[async_trait]
impl StateStore for RedisStateStore {
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
        self.read(&request.key).await
    }

    async fn set(&self, request: SetRequest) -> Result<(), StateError> {
        let etag = parse_etag(&request.key, request.etag.as_deref())?;
        let mut connection = self.connection();
        let mut invocation = scripts::SET.key(&request.key);
        invocation
            .arg(etag)
            .arg(request.value.as_ref())
            .arg(first_write_flag(request.concurrency))
            .arg(self.ttl_arg(request.ttl));
        self.bounded(
            self.settings.write_timeout,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await
        .map(drop)
        .map_err(|error| with_key(error, &request.key))
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError> {
        let etag = parse_etag(&request.key, request.etag.as_deref())?;
        let mut connection = self.connection();
        let mut invocation = scripts::DELETE.key(&request.key);
        invocation.arg(etag);
        self.bounded(
            self.settings.write_timeout,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await
        .map(drop)
        .map_err(|error| with_key(error, &request.key))
    }

    async fn bulk_get(&self, keys: Vec<String>) -> Result<Vec<BulkGetItem>, StateError> {
        // One script call per key, issued together so the multiplexed connection pipelines them.
        let reads = keys.iter().map(|key| self.read(key));
        let results = futures::future::join_all(reads).await;
        Ok(keys
            .into_iter()
            .zip(results)
            .map(|(key, result)| BulkGetItem {
                key,
                result: result.map_err(|error| error.to_string()),
            })
            .collect())
    }

    async fn transact(&self, operations: Vec<TransactionOperation>) -> Result<(), StateError> {
        let mut invocation = scripts::TRANSACTION.prepare_invoke();
        for operation in &operations {
            match operation {
                TransactionOperation::Upsert(request) => {
                    invocation
                        .key(&request.key)
                        .arg("upsert")
                        .arg(parse_etag(&request.key, request.etag.as_deref())?)
                        .arg(request.value.as_ref())
                        .arg(first_write_flag(request.concurrency))
                        .arg(self.ttl_arg(request.ttl));
                }
                TransactionOperation::Delete(request) => {
                    invocation
                        .key(&request.key)
                        .arg("delete")
                        .arg(parse_etag(&request.key, request.etag.as_deref())?)
                        .arg("")
                        .arg("0")
                        .arg("");
                }
            }
        }
        let mut connection = self.connection();
        self.bounded(
            self.settings.write_timeout,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await
        .map(drop)
    }
}

/// ETag mismatches name the key the store was asked about.
fn with_key(error: StateError, key: &str) -> StateError {
    match error {
        StateError::EtagMismatch { .. } => StateError::EtagMismatch {
            key: key.to_string(),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use outrigger_test_harness::RedisServer;

    use super::*;

    async fn store(server: &RedisServer) -> RedisStateStore {
        let metadata = ComponentMetadata::from_pairs([("redisHost", server.address().as_str())]);
        RedisStateStore::from_metadata(&metadata)
            .await
            .expect("connects")
    }

    #[tokio::test]
    async fn passes_state_conformance_against_real_redis() {
        let server = RedisServer::start().expect("redis-server");
        let shared = Arc::new(store(&server).await);
        outrigger_conformance::state::run_suite(|| {
            let shared = Arc::clone(&shared);
            async move { shared as Arc<dyn StateStore> }
        })
        .await;
    }

    #[tokio::test]
    async fn stores_items_in_dapr_hash_layout() {
        let server = RedisServer::start().expect("redis-server");
        let store = store(&server).await;
        store
            .set(SetRequest::new("app||k", "hello"))
            .await
            .expect("set");
        let mut raw = server.client().await;
        let (data, version): (String, String) = redis::cmd("HMGET")
            .arg("app||k")
            .arg("data")
            .arg("version")
            .query_async(&mut raw)
            .await
            .expect("hmget");
        assert_eq!((data.as_str(), version.as_str()), ("hello", "1"));
    }

    #[tokio::test]
    async fn enable_tls_and_password_connect_to_a_tls_redis() {
        let server = RedisServer::start_with(outrigger_test_harness::RedisOptions {
            tls: true,
            password: Some("pa55".into()),
            ..Default::default()
        })
        .expect("redis-server with TLS");
        let address = server.address();
        let with = |pairs: &[(&str, &str)]| {
            let mut all = vec![("redisHost", address.as_str())];
            all.extend_from_slice(pairs);
            ComponentMetadata::from_pairs(all)
        };
        let store = RedisStateStore::from_metadata(&with(&[
            ("enableTLS", "true"),
            ("redisPassword", "pa55"),
        ]))
        .await
        .expect("connects over TLS");
        store
            .set(SetRequest::new("tls-key", "secret"))
            .await
            .expect("set");
        let item = store
            .get(GetRequest::new("tls-key"))
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(item.value, Bytes::from("secret"));

        let wrong = RedisStateStore::from_metadata(&with(&[
            ("enableTLS", "true"),
            ("redisPassword", "nope"),
            ("dialTimeout", "1s"),
        ]))
        .await
        .err()
        .expect("wrong password");
        assert!(wrong.to_string().contains(&address), "{wrong}");
        let plain = RedisStateStore::from_metadata(&with(&[
            ("redisPassword", "pa55"),
            ("dialTimeout", "500ms"),
        ]))
        .await
        .err()
        .expect("plain TCP to a TLS port fails");
        assert!(plain.to_string().contains("error connecting"), "{plain}");
    }

    #[tokio::test]
    async fn unreachable_server_fails_init_with_the_address() {
        let port = outrigger_test_harness::free_port();
        let metadata = ComponentMetadata::from_pairs([
            ("redisHost", format!("127.0.0.1:{port}").as_str()),
            ("dialTimeout", "500ms"),
        ]);
        let error = RedisStateStore::from_metadata(&metadata)
            .await
            .err()
            .expect("no server");
        assert!(
            error.to_string().contains(&format!("127.0.0.1:{port}")),
            "{error}"
        );
    }
}
