//! Redis going away under a stream of writes: calls fail fast with ERR_STATE_SAVE, recover
//! without a sidecar restart, and every acknowledged write survives.

use std::time::{Duration, Instant};

use outrigger_e2e::{http_base, start_with_redis};
use outrigger_test_harness::RedisServer;
use reqwest::StatusCode;

/// One-second Redis timeouts, so an outage shows within a second.
const FAST_TIMEOUTS: &[(&str, &str)] = &[
    ("readTimeout", "1s"),
    ("writeTimeout", "1s"),
    ("dialTimeout", "1s"),
];

#[tokio::test]
async fn writes_fail_fast_during_an_outage_and_acknowledged_writes_survive() {
    let mut redis = RedisServer::start().expect("redis-server");
    let (_dir, sidecar) = start_with_redis("outage", &redis, "store", FAST_TIMEOUTS).await;
    let base = http_base(&sidecar);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let mut acknowledged = Vec::new();
    let mut failures = Vec::new();
    let mut slowest_failure = Duration::ZERO;
    for index in 0..300 {
        if index == 100 {
            redis.stop();
        }
        if index == 200 {
            redis.restart().expect("redis restarts");
        }
        let started = Instant::now();
        let response = http
            .post(format!("{base}/v1.0/state/store"))
            .body(format!(r#"[{{"key":"w{index}","value":{index}}}]"#))
            .send()
            .await
            .expect("the sidecar answers every request");
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            acknowledged.push(index);
        } else {
            slowest_failure = slowest_failure.max(started.elapsed());
            let body: serde_json::Value = response.json().await.expect("Dapr error body");
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
            assert_eq!(body["errorCode"], "ERR_STATE_SAVE");
            let message = body["message"].as_str().expect("message");
            assert!(
                message.contains("store"),
                "the message names the store: {message}"
            );
            failures.push(index);
        }
    }
    assert!(
        failures.len() >= 90,
        "writes during the outage fail: {} failures",
        failures.len()
    );
    assert!(
        failures.iter().all(|index| (100..215).contains(index)),
        "failures only during the outage: {failures:?}"
    );
    assert!(
        slowest_failure < Duration::from_millis(1500),
        "failures are fast (no hang beyond the 1s timeout): slowest {slowest_failure:?}"
    );
    assert!(
        acknowledged.iter().filter(|index| **index >= 200).count() >= 85,
        "writes succeed again after the restart"
    );

    // Every acknowledged write is readable, through the sidecar and in Redis itself.
    for index in &acknowledged {
        let response = http
            .get(format!("{base}/v1.0/state/store/w{index}"))
            .send()
            .await
            .expect("get");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "acknowledged write w{index} lost"
        );
        assert_eq!(response.text().await.expect("body"), index.to_string());
    }
    sidecar.shutdown().await;
}

#[tokio::test]
async fn reads_fail_with_err_state_get_while_redis_is_down() {
    let mut redis = RedisServer::start().expect("redis-server");
    let (_dir, sidecar) = start_with_redis("outage-read", &redis, "store", FAST_TIMEOUTS).await;
    let base = http_base(&sidecar);
    let http = reqwest::Client::new();
    redis.stop();
    let started = Instant::now();
    let response = http
        .get(format!("{base}/v1.0/state/store/k"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["errorCode"], "ERR_STATE_GET");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    redis.restart().expect("restart");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = http
            .get(format!("{base}/v1.0/state/store/k"))
            .send()
            .await
            .expect("get");
        if response.status() == StatusCode::NO_CONTENT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads recover after Redis returns"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sidecar.shutdown().await;
}
