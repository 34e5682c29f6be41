//! A Kafka broker that goes down during a stream of publishes: failed publishes say so, and
//! every publish that was acknowledged reaches the app at least once after the broker returns.
//! A broker that is down when the sidecar starts fails start-up, as in Dapr (component init
//! connects), unless the component sets `ignoreErrors: true`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use outrigger_e2e::expect_start_failure;
use outrigger_e2e::{config_with_resources, http_base, start};
use outrigger_test_harness::{KafkaBroker, SidecarBuilder};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_publish_survives_a_broker_restart() {
    let mut broker = KafkaBroker::start_durable().expect("durable tansu broker");
    let received: Arc<Mutex<HashSet<String>>> = Arc::default();
    async fn receive(
        State(received): State<Arc<Mutex<HashSet<String>>>>,
        body: String,
    ) -> &'static str {
        let event: Value = serde_json::from_str(&body).expect("CloudEvent");
        received
            .lock()
            .expect("lock")
            .insert(event["data"].as_str().unwrap_or_default().to_string());
        ""
    }
    let app = Router::new()
        .route(
            "/dapr/subscribe",
            get(|| async {
                axum::Json(json!([{"pubsubname": "events", "topic": "stream", "route": "/stream"}]))
            }),
        )
        .route("/stream", post(receive))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app_port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("app") });

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("events.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: events\nspec:\n  type: pubsub.kafka\n  version: v1\n  metadata:\n  - name: brokers\n    value: \"{}\"\n  - name: initialOffset\n    value: oldest\n  - name: operationTimeout\n    value: 1s\n  - name: sessionTimeout\n    value: 6s\n",
            broker.address()
        ),
    )
    .expect("write");
    let mut config = config_with_resources("outage-app", dir.path());
    config.app_port = Some(app_port);
    let sidecar = start(config).await;
    let base = http_base(&sidecar);
    assert!(
        outrigger_e2e::wait_until_app_ready(&base, Duration::from_secs(30)).await,
        "ready"
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");

    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for index in 0..60 {
        if index == 20 {
            broker.stop();
        }
        if index == 30 {
            broker.restart().expect("the broker restarts with its data");
        }
        let message = format!("m{index}");
        let response = http
            .post(format!("{base}/v1.0/publish/events/stream"))
            .header("content-type", "text/plain")
            .body(message.clone())
            .send()
            .await
            .expect("the sidecar answers every publish");
        match response.status() {
            reqwest::StatusCode::NO_CONTENT => acknowledged.push(message),
            status => {
                assert_eq!(status, reqwest::StatusCode::INTERNAL_SERVER_ERROR);
                let body: Value = response.json().await.expect("json");
                assert_eq!(body["errorCode"], "ERR_PUBSUB_PUBLISH_MESSAGE", "{body}");
                refused += 1;
            }
        }
    }
    assert!(
        refused >= 5,
        "publishes while the broker is down fail: {refused}"
    );
    assert!(
        acknowledged.len() >= 40,
        "publishes succeed around the outage: {}",
        acknowledged.len()
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let missing: Vec<String> = {
            let received = received.lock().expect("lock");
            acknowledged
                .iter()
                .filter(|message| !received.contains(*message))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged publishes never delivered: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sidecar.shutdown().await;
}

#[test]
fn a_broker_that_is_down_at_start_up_fails_it_unless_errors_are_ignored() {
    let brokers = format!("127.0.0.1:{}", outrigger_test_harness::free_port());
    let component = |name: &str, component_type: &str, extra: &str| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {component_type}\n  version: v1\n  metadata:\n  - name: brokers\n    value: \"{brokers}\"\n{extra}"
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kafka.yaml");
    for (name, component_type, extra) in [
        ("events", "pubsub.kafka", ""),
        (
            "stream",
            "bindings.kafka",
            "  - name: publishTopic\n    value: out\n",
        ),
    ] {
        std::fs::write(&file, component(name, component_type, extra)).expect("write");
        let (took, output) = expect_start_failure(
            SidecarBuilder::new("outage-app").resources_path(dir.path()),
            1,
            &[
                &format!("component {name:?} ({component_type}): init failed"),
                &format!("kafka at {brokers}: no broker reachable"),
                "Connection refused",
            ],
        );
        assert!(
            took < Duration::from_secs(4),
            "{name}: start-up failed after {took:?}:\n{output}"
        );
    }

    std::fs::write(
        &file,
        component("events", "pubsub.kafka", "")
            .replace("  version: v1\n", "  version: v1\n  ignoreErrors: true\n"),
    )
    .expect("write");
    let sidecar = SidecarBuilder::new("outage-app")
        .resources_path(dir.path())
        .spawn();
    let log = sidecar.log();
    assert!(
        log.lines().any(|line| line.contains("ignoring component")
            && line.contains(&format!("kafka at {brokers}: no broker reachable"))),
        "{log}"
    );
}

#[test]
fn a_silent_broker_fails_start_up_naming_the_brokers_within_the_init_timeout() {
    let brokers = outrigger_test_harness::silent_peer().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("kafka.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: events\nspec:\n  type: pubsub.kafka\n  version: v1\n  initTimeout: 2s\n  metadata:\n  - name: brokers\n    value: \"{brokers}\"\n"
        ),
    )
    .expect("write");
    // The component gives up before the loader's timeout, so the failure names the brokers
    // rather than only the timeout.
    let (took, output) = expect_start_failure(
        SidecarBuilder::new("outage-app").resources_path(dir.path()),
        1,
        &[
            "component \"events\" (pubsub.kafka): init failed",
            &format!("kafka at {brokers}: no broker reachable"),
        ],
    );
    assert!(
        took < Duration::from_secs(5),
        "start-up failed after {took:?}:\n{output}"
    );
}
