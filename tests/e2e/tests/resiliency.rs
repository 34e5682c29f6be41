//! Resiliency policies on component calls: a retry policy rides out a short Redis outage, a
//! timeout policy cuts a slow call short, and a bad policy file stops start-up with exit 2.

use std::time::{Duration, Instant};

use outrigger_e2e::{config_with_resources, http_base, redis_component, start};
use outrigger_test_harness::{RedisServer, SidecarBuilder};

const RESILIENCY: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: policies
spec:
  policies:
    timeouts:
      quick: 300ms
    retries:
      patient:
        policy: constant
        duration: 100ms
        maxRetries: 30
  targets:
    components:
      patient-store:
        outbound:
          retry: patient
      quick-store:
        outbound:
          timeout: quick
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_timeout_policies_apply_to_state_calls() {
    let mut redis = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let fast = [
        ("readTimeout", "5s"),
        ("writeTimeout", "5s"),
        ("dialTimeout", "200ms"),
    ];
    std::fs::write(
        dir.path().join("patient.yaml"),
        redis_component("patient-store", &redis.address(), &fast),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("quick.yaml"),
        redis_component("quick-store", &redis.address(), &fast),
    )
    .expect("write");
    std::fs::write(dir.path().join("resiliency.yaml"), RESILIENCY).expect("write");
    let sidecar = start(config_with_resources("resilient", dir.path())).await;
    let base = http_base(&sidecar);
    let http = reqwest::Client::new();

    // Timeout: Redis is busy for a second; the policy answers after 300 ms.
    let sleeper = redis.hold_busy(1).await;
    let started = Instant::now();
    let response = http
        .get(format!("{base}/v1.0/state/quick-store/k"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        response.status(),
        reqwest::StatusCode::INTERNAL_SERVER_ERROR
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["message"].as_str().unwrap_or("").contains("timed out"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "cut short by the policy: {:?}",
        started.elapsed()
    );
    sleeper.await.expect("sleeper");

    // Retry: a write during a short outage succeeds once Redis is back.
    redis.stop();
    let write = tokio::spawn({
        let http = http.clone();
        let base = base.clone();
        async move {
            http.post(format!("{base}/v1.0/state/patient-store"))
                .body(r#"[{"key":"k","value":"kept"}]"#)
                .send()
                .await
                .expect("save")
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.restart().expect("restart");
    assert_eq!(
        write.await.expect("task"),
        reqwest::StatusCode::NO_CONTENT,
        "retried until Redis came back"
    );
    let value = http
        .get(format!("{base}/v1.0/state/patient-store/k"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert_eq!(value, "\"kept\"");
    sidecar.shutdown().await;
}

#[test]
fn a_bad_resiliency_file_fails_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("resiliency.yaml"),
        RESILIENCY.replace("retry: patient", "retry: missing"),
    )
    .expect("write");
    let (status, output) = SidecarBuilder::new("x")
        .resources_path(dir.path())
        .run_to_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains("targets.components.patient-store.outbound.retry"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_retries_and_circuit_breaker_shape_delivery_to_the_app() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let calls = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post({
            let calls = Arc::clone(&calls);
            move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("app") });
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("pubsub.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("subscription.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: pubsub\n  topic: t\n  route: /events\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("resiliency.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\nspec:\n  policies:\n    retries:\n      twice:\n        policy: constant\n        duration: 10ms\n        maxRetries: 2\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 1500ms\n        trip: consecutiveFailures >= 3\n  targets:\n    components:\n      pubsub:\n        inbound:\n          retry: twice\n          circuitBreaker: cb\n",
    )
    .expect("write");
    let mut config = config_with_resources("inbound", dir.path());
    config.app_port = Some(port);
    let sidecar = start(config).await;
    let base = http_base(&sidecar);
    let http = reqwest::Client::new();
    assert!(
        outrigger_e2e::wait_until_app_ready(&base, Duration::from_secs(10)).await,
        "healthz never became ready"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = http
        .post(format!("{base}/v1.0/publish/pubsub/t"))
        .body("x")
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "one delivery and two policy retries, then the breaker opens"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "no calls reach the app while the breaker is open"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.load(Ordering::SeqCst) == 3 {
        assert!(
            Instant::now() < deadline,
            "the breaker half-opens and lets a probe through"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sidecar.shutdown().await;
}
