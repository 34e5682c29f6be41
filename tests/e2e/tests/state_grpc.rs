//! The gRPC API (`dapr.proto.runtime.v1.Dapr`) with a real tonic client.

use std::collections::HashMap;

use outrigger_client::{OutriggerClient, common, runtime};
use outrigger_e2e::{config_with_resources, grpc_url, redis_component, start};
use outrigger_runtime::Config;
use outrigger_test_harness::RedisServer;
use tonic::Code;

fn item(key: &str, value: &str, etag: Option<&str>) -> common::StateItem {
    common::StateItem {
        key: key.to_string(),
        value: value.as_bytes().to_vec(),
        etag: etag.map(|value| common::Etag {
            value: value.to_string(),
        }),
        metadata: HashMap::new(),
        options: None,
    }
}

fn code(result: Result<impl std::fmt::Debug, outrigger_client::ClientError>) -> (Code, String) {
    match result {
        Err(outrigger_client::ClientError::Status(status)) => {
            (status.code(), status.message().to_string())
        }
        other => panic!("expected a gRPC error status, got {other:?}"),
    }
}

async fn round_trip(client: &mut OutriggerClient, store: &str) {
    assert_eq!(
        client.get_state(store, "g-missing").await.expect("get"),
        None
    );
    client
        .save_state(store, "g1", "v1", None)
        .await
        .expect("save");
    let first = client
        .get_state(store, "g1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(first.data.as_ref(), b"v1");
    let etag = first.etag.expect("etag");
    client
        .save_state(store, "g1", "v2", Some(&etag))
        .await
        .expect("save with current etag");
    let (status, message) = code(client.save_state(store, "g1", "v3", Some(&etag)).await);
    assert_eq!(status, Code::Aborted, "{message}");
    assert!(message.contains("etag"), "{message}");
    let (status, _) = code(client.save_state(store, "g1", "v3", Some("bogus")).await);
    assert_eq!(status, Code::InvalidArgument);
    let (status, _) = code(client.delete_state(store, "g1", Some(&etag)).await);
    assert_eq!(status, Code::Aborted, "delete with a stale etag");
    assert_eq!(
        client
            .get_state(store, "g1")
            .await
            .expect("get")
            .expect("kept")
            .data
            .as_ref(),
        b"v2"
    );

    // Bulk save, bulk get, bulk delete.
    client
        .raw()
        .save_state(runtime::SaveStateRequest {
            store_name: store.to_string(),
            states: vec![item("b1", "one", None), item("b2", "two", None)],
        })
        .await
        .expect("bulk save");
    let bulk = client
        .raw()
        .get_bulk_state(runtime::GetBulkStateRequest {
            store_name: store.to_string(),
            keys: vec!["b2".into(), "nope".into(), "b1".into()],
            parallelism: 0,
            metadata: HashMap::new(),
        })
        .await
        .expect("bulk get")
        .into_inner()
        .items;
    let keys: Vec<_> = bulk.iter().map(|item| item.key.as_str()).collect();
    assert_eq!(keys, ["b2", "nope", "b1"]);
    assert_eq!(bulk[0].data, b"two");
    assert!(bulk[1].data.is_empty() && bulk[1].etag.is_empty());
    client
        .raw()
        .delete_bulk_state(runtime::DeleteBulkStateRequest {
            store_name: store.to_string(),
            states: vec![item("b1", "", None), item("b2", "", None)],
        })
        .await
        .expect("bulk delete");
    assert_eq!(client.get_state(store, "b1").await.expect("get"), None);

    // Transactions: applied together, or not at all.
    let transaction =
        |operations: Vec<(&str, common::StateItem)>| runtime::ExecuteStateTransactionRequest {
            store_name: store.to_string(),
            operations: operations
                .into_iter()
                .map(|(kind, request)| runtime::TransactionalStateOperation {
                    operation_type: kind.to_string(),
                    request: Some(request),
                })
                .collect(),
            metadata: HashMap::new(),
        };
    client
        .raw()
        .execute_state_transaction(transaction(vec![
            ("upsert", item("t1", "x", None)),
            ("delete", item("g1", "", None)),
        ]))
        .await
        .expect("transaction");
    assert_eq!(client.get_state(store, "g1").await.expect("get"), None);
    let failed = client
        .raw()
        .execute_state_transaction(transaction(vec![
            ("upsert", item("t2", "y", None)),
            ("upsert", item("t1", "z", Some("4242"))),
        ]))
        .await
        .expect_err("stale etag");
    assert_eq!(failed.code(), Code::Aborted);
    assert_eq!(
        client.get_state(store, "t2").await.expect("get"),
        None,
        "nothing applied"
    );
    let unknown = client
        .raw()
        .execute_state_transaction(transaction(vec![("merge", item("t1", "z", None))]))
        .await
        .expect_err("unknown operation");
    assert_eq!(unknown.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn grpc_state_round_trip_in_memory_and_redis() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("redis.yaml"),
        redis_component("redisstore", &redis.address(), &[]),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("memory.yaml"),
        outrigger_e2e::memory_component("memstore"),
    )
    .expect("write");
    let sidecar = start(config_with_resources("grpc-app", dir.path())).await;
    let mut client = OutriggerClient::connect(&grpc_url(&sidecar), None)
        .await
        .expect("connect");
    round_trip(&mut client, "memstore").await;
    round_trip(&mut client, "redisstore").await;
    let metadata = client.metadata().await.expect("metadata");
    assert_eq!(metadata.id, "grpc-app");
    let names: Vec<_> = metadata
        .registered_components
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["memstore", "redisstore"]);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn grpc_errors_unknown_store_unimplemented_token_and_size() {
    let mut config = Config::for_test("grpc-errors");
    config.api_token = Some("tok".into());
    config.max_body_size = 1024;
    let sidecar = start(config).await;

    let mut anonymous = OutriggerClient::connect(&grpc_url(&sidecar), None)
        .await
        .expect("connect");
    let (status, _) = code(anonymous.get_state("statestore", "k").await);
    assert_eq!(status, Code::Unauthenticated);
    let mut wrong = OutriggerClient::connect(&grpc_url(&sidecar), Some("nope"))
        .await
        .expect("connect");
    assert_eq!(code(wrong.metadata().await).0, Code::Unauthenticated);

    let mut client = OutriggerClient::connect(&grpc_url(&sidecar), Some("tok"))
        .await
        .expect("connect");
    let (status, message) = code(client.get_state("nostore", "k").await);
    assert_eq!(status, Code::InvalidArgument);
    assert_eq!(message, "state store nostore is not found");
    let (status, message) = code(client.save_state("statestore", "a||b", "v", None).await);
    assert_eq!(status, Code::InvalidArgument);
    assert!(message.contains("can't contain '||'"), "{message}");
    let (status, _) = code(client.save_state("statestore", "", "v", None).await);
    assert_eq!(status, Code::InvalidArgument);
    let too_big = client
        .save_state("statestore", "big", vec![b'x'; 4096], None)
        .await;
    assert!(
        too_big.is_err(),
        "a message over --max-body-size is refused"
    );

    let unimplemented = client
        .raw()
        .get_secret(runtime::GetSecretRequest::default())
        .await
        .expect_err("secrets are not built yet");
    assert_eq!(unimplemented.code(), Code::Unimplemented);
    assert!(
        unimplemented.message().contains("GetSecret"),
        "{}",
        unimplemented.message()
    );

    // Still serving.
    client
        .save_state("statestore", "ok", "fine", None)
        .await
        .expect("save");
    assert!(
        client
            .get_state("statestore", "ok")
            .await
            .expect("get")
            .is_some()
    );
    client
        .raw()
        .shutdown(runtime::ShutdownRequest {})
        .await
        .expect("shutdown");
    tokio::time::timeout(std::time::Duration::from_secs(10), sidecar.wait())
        .await
        .expect("stops");
}

#[tokio::test]
async fn grpc_no_store_configured_is_failed_precondition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sidecar = start(config_with_resources("grpc-empty", dir.path())).await;
    let mut client = OutriggerClient::connect(&grpc_url(&sidecar), None)
        .await
        .expect("connect");
    let (status, _) = code(client.get_state("statestore", "k").await);
    assert_eq!(status, Code::FailedPrecondition);
    sidecar.shutdown().await;
}
