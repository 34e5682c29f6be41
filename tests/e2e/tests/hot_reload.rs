//! Component files added, changed, broken and removed while the sidecar runs.

use std::time::{Duration, Instant};

use outrigger_e2e::{config_with_resources, http_base, memory_component, redis_component, start};
use outrigger_test_harness::RedisServer;
use reqwest::StatusCode;

async fn save(
    http: &reqwest::Client,
    base: &str,
    store: &str,
    key: &str,
    value: &str,
) -> StatusCode {
    http.post(format!("{base}/v1.0/state/{store}"))
        .body(format!(r#"[{{"key":"{key}","value":"{value}"}}]"#))
        .send()
        .await
        .expect("save")
        .status()
}

async fn read(http: &reqwest::Client, base: &str, store: &str, key: &str) -> (StatusCode, String) {
    let response = http
        .get(format!("{base}/v1.0/state/{store}/{key}"))
        .send()
        .await
        .expect("get");
    (response.status(), response.text().await.expect("body"))
}

/// Polls until `check` holds, for up to five seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn components_are_added_replaced_kept_when_broken_and_removed() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.yaml"), memory_component("alpha")).expect("write");
    let sidecar = start(config_with_resources("reload", dir.path())).await;
    let base = http_base(&sidecar);
    let http = reqwest::Client::new();
    assert_eq!(
        save(&http, &base, "alpha", "k", "1").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        save(&http, &base, "beta", "k", "1").await,
        StatusCode::BAD_REQUEST,
        "beta not declared yet"
    );

    // Added: a new file becomes usable without a restart.
    let beta = dir.path().join("b.yml");
    std::fs::write(&beta, redis_component("beta", &redis.address(), &[])).expect("write");
    eventually("beta is loaded", || async {
        save(&http, &base, "beta", "k", "first").await == StatusCode::NO_CONTENT
    })
    .await;

    // Broken: a file that no longer parses, then one with an unknown type; beta keeps serving.
    std::fs::write(&beta, "kind: Component\nmetadata: {name: beta\n").expect("write");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        read(&http, &base, "beta", "k").await,
        (StatusCode::OK, "\"first\"".to_string())
    );
    std::fs::write(
        &beta,
        redis_component("beta", &redis.address(), &[]).replace("state.redis", "state.nosuch"),
    )
    .expect("write");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        read(&http, &base, "beta", "k").await,
        (StatusCode::OK, "\"first\"".to_string()),
        "the old beta keeps serving"
    );
    let metadata: serde_json::Value = http
        .get(format!("{base}/v1.0/metadata"))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert!(
        metadata["components"].to_string().contains("state.redis"),
        "{metadata}"
    );

    // Changed: alpha is replaced by a new instance (an empty in-memory store with a new prefix).
    std::fs::write(
        dir.path().join("a.yaml"),
        memory_component("alpha").replace(
            "version: v1\n",
            "version: v1\n  metadata:\n  - name: keyPrefix\n    value: none\n",
        ),
    )
    .expect("write");
    eventually("alpha is replaced", || async {
        read(&http, &base, "alpha", "k").await.0 == StatusCode::NO_CONTENT
    })
    .await;

    // Removed: deleting the file unloads the component.
    std::fs::remove_file(&beta).expect("remove");
    eventually("beta is removed", || async {
        read(&http, &base, "beta", "k").await.0 == StatusCode::BAD_REQUEST
    })
    .await;
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_instance_it_started_with() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("store.yaml");
    std::fs::write(
        &file,
        redis_component(
            "store",
            &redis.address(),
            &[("readTimeout", "5s"), ("writeTimeout", "5s")],
        ),
    )
    .expect("write");
    let sidecar = start(config_with_resources("inflight", dir.path())).await;
    let base = http_base(&sidecar);
    let http = reqwest::Client::new();

    // Hold Redis busy for a second, start a write, then remove the component while it waits.
    let sleeper = redis.hold_busy(1).await;
    let write = tokio::spawn({
        let http = http.clone();
        let base = base.clone();
        async move { save(&http, &base, "store", "held", "v").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::remove_file(&file).expect("remove");
    assert_eq!(
        write.await.expect("write task"),
        StatusCode::NO_CONTENT,
        "the in-flight write completes"
    );
    sleeper.await.expect("sleeper");
    let mut check = redis.client().await;
    let stored: Option<String> = redis::cmd("HGET")
        .arg("inflight||held")
        .arg("data")
        .query_async(&mut check)
        .await
        .expect("hget");
    assert_eq!(stored.as_deref(), Some("\"v\""));
    // With its only component gone, the sidecar has no state store configured at all.
    eventually("store is removed", || async {
        read(&http, &base, "store", "held")
            .await
            .1
            .contains("ERR_STATE_STORE_NOT_CONFIGURED")
    })
    .await;
    sidecar.shutdown().await;
}
