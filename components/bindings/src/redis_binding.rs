//! `bindings.redis`: `create` (SET, with optional `ttlInSeconds`), `get` and `delete` of the
//! request's `key` metadata.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use outrigger_components::bindings::{
    BindingError, InvokeRequest, InvokeResponse, OutputBinding, check_operation,
};
use outrigger_components::{ComponentMetadata, InitError};
use outrigger_redis_common::RedisSettings;
use redis::aio::ConnectionManager;

const OPERATIONS: [&str; 3] = ["create", "get", "delete"];

/// The `bindings.redis` component.
pub struct RedisBinding {
    connection: ConnectionManager,
    settings: RedisSettings,
}

impl RedisBinding {
    pub async fn from_metadata(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        let settings = RedisSettings::from_metadata(metadata)?;
        let client = outrigger_redis_common::client(&settings)?;
        let timeout = settings.read_timeout.max(settings.write_timeout);
        let connection = outrigger_redis_common::connect(&client, &settings, timeout).await?;
        Ok(Self {
            connection,
            settings,
        })
    }
}

#[async_trait]
impl OutputBinding for RedisBinding {
    fn operations(&self) -> Vec<String> {
        OPERATIONS
            .iter()
            .map(|operation| operation.to_string())
            .collect()
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, BindingError> {
        check_operation(&request.operation, &OPERATIONS)?;
        let key = request
            .metadata
            .get("key")
            .filter(|key| !key.is_empty())
            .ok_or_else(|| BindingError::InvalidRequest("metadata.key is required".into()))?;
        let command = match request.operation.as_str() {
            "create" => {
                let mut command = redis::cmd("SET");
                command.arg(key).arg(request.data.as_ref());
                if let Some(ttl) = request.metadata.get("ttlInSeconds") {
                    let seconds: u64 = ttl.parse().map_err(|_| {
                        BindingError::InvalidRequest(format!(
                            "metadata.ttlInSeconds must be a whole number, got {ttl:?}"
                        ))
                    })?;
                    command.arg("EX").arg(seconds);
                }
                command
            }
            "get" => {
                let mut command = redis::cmd("GET");
                command.arg(key);
                command
            }
            _ => {
                let mut command = redis::cmd("DEL");
                command.arg(key);
                command
            }
        };
        let mut connection = self.connection.clone();
        let deadline = self.settings.write_timeout.max(self.settings.read_timeout);
        let reply: redis::Value =
            tokio::time::timeout(deadline, command.query_async(&mut connection))
                .await
                .map_err(|_| {
                    BindingError::Backend(format!("redis: no answer within {deadline:?}"))
                })?
                .map_err(|error| BindingError::Backend(format!("redis: {error}")))?;
        let data = match reply {
            redis::Value::BulkString(bytes) if request.operation == "get" => Bytes::from(bytes),
            _ => Bytes::new(),
        };
        Ok(InvokeResponse {
            data,
            metadata: HashMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use outrigger_test_harness::RedisServer;

    use super::*;

    #[tokio::test]
    async fn passes_output_binding_conformance() {
        let server = RedisServer::start().expect("redis-server");
        let address = server.address();
        let binding = RedisBinding::from_metadata(&ComponentMetadata::from_pairs([(
            "redisHost",
            address.as_str(),
        )]))
        .await
        .expect("connects");
        let valid = InvokeRequest {
            operation: "create".into(),
            data: Bytes::from_static(b"v"),
            metadata: HashMap::from([("key".to_string(), "conformance".to_string())]),
        };
        outrigger_conformance::bindings::run_output_suite(&binding, valid).await;
    }

    #[tokio::test]
    async fn create_get_delete_against_real_redis() {
        let server = RedisServer::start().expect("redis-server");
        let address = server.address();
        let binding = RedisBinding::from_metadata(&ComponentMetadata::from_pairs([(
            "redisHost",
            address.as_str(),
        )]))
        .await
        .expect("connects");
        let call = |operation: &str, data: &'static str| InvokeRequest {
            operation: operation.into(),
            data: Bytes::from_static(data.as_bytes()),
            metadata: HashMap::from([("key".to_string(), "greeting".to_string())]),
        };
        binding
            .invoke(call("create", "hello"))
            .await
            .expect("create");
        assert_eq!(
            binding.invoke(call("get", "")).await.expect("get").data,
            Bytes::from("hello")
        );
        binding.invoke(call("delete", "")).await.expect("delete");
        assert!(
            binding
                .invoke(call("get", ""))
                .await
                .expect("get")
                .data
                .is_empty()
        );
        let no_key = binding
            .invoke(InvokeRequest {
                operation: "get".into(),
                ..InvokeRequest::default()
            })
            .await
            .expect_err("key required");
        assert!(no_key.to_string().contains("metadata.key"));
        assert!(binding.invoke(call("increment", "")).await.is_err());
    }
}
