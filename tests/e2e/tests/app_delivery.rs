//! Delivery of published events to an HTTP app: programmatic and declarative subscriptions,
//! routing rules, the app's SUCCESS / RETRY / DROP / 404 / 500 answers, dead-letter topics,
//! and waiting for the app to come up.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use outrigger_e2e::{config_with_resources, http_base, memory_component, start};
use outrigger_runtime::Config;
use serde_json::{Value, json};

/// What the test app received: (path, headers, CloudEvent).
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, HeaderMap, Value)>>>);

impl Received {
    fn events(&self) -> Vec<(String, HeaderMap, Value)> {
        self.0.lock().expect("lock").clone()
    }

    fn count(&self, path: &str, data: &Value) -> usize {
        self.events()
            .iter()
            .filter(|(seen_path, _, event)| seen_path == path && &event["data"] == data)
            .count()
    }

    async fn wait_for(&self, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

const SUBSCRIPTIONS: &str = r#"[
  {"pubsubname":"pubsub","topic":"orders","routes":{"rules":[
     {"match":"event.data.priority == \"high\"","path":"/orders/urgent"}],"default":"/orders"}},
  {"pubsubname":"pubsub","topic":"jobs","route":"/jobs","deadLetterTopic":"jobs-dead"},
  {"pubsubname":"pubsub","topic":"jobs-dead","route":"/dead"}
]"#;

/// An app whose answer depends on the event's `data.answer` field.
fn app(received: Received) -> Router {
    async fn handle(
        State(received): State<Received>,
        Path(path): Path<String>,
        headers: HeaderMap,
        body: String,
    ) -> axum::response::Response {
        let event: Value = serde_json::from_str(&body).expect("the app receives JSON CloudEvents");
        let answer = event["data"]["answer"].as_str().unwrap_or("ok").to_string();
        let attempts = {
            let mut events = received.0.lock().expect("lock");
            events.push((format!("/{path}"), headers, event.clone()));
            events
                .iter()
                .filter(|(_, _, seen)| seen["id"] == event["id"])
                .count()
        };
        match (answer.as_str(), attempts) {
            ("retry-once", 1) => axum::Json(json!({"status": "RETRY"})).into_response(),
            ("fail-once", 1) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            ("drop", _) => axum::Json(json!({"status": "DROP"})).into_response(),
            ("gone", _) => StatusCode::NOT_FOUND.into_response(),
            _ => axum::Json(json!({"status": "SUCCESS"})).into_response(),
        }
    }
    Router::new()
        .route(
            "/dapr/subscribe",
            get(|| async { ([("content-type", "application/json")], SUBSCRIPTIONS) }),
        )
        .route("/{*path}", post(handle))
        .with_state(received)
}

async fn serve(listener: tokio::net::TcpListener, received: Received) {
    tokio::spawn(async move {
        axum::serve(listener, app(received))
            .await
            .expect("test app")
    });
}

async fn publish(base: &str, topic: &str, data: Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1.0/publish/pubsub/{topic}"))
        .header("content-type", "application/json")
        .body(data.to_string())
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn programmatic_subscriptions_route_and_honour_the_apps_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let mut config = Config::for_test("orders-app");
    config.app_port = Some(listener.local_addr().expect("addr").port());
    let received = Received::default();
    serve(listener, received.clone()).await;
    let sidecar = start(config).await;
    let base = http_base(&sidecar);
    // Subscriptions open once the app answers; the in-memory pub/sub keeps nothing before that.
    assert!(
        outrigger_e2e::wait_until_app_ready(&base, Duration::from_secs(10)).await,
        "healthz never became ready"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    publish(&base, "orders", json!({"priority": "high", "id": 1})).await;
    publish(&base, "orders", json!({"priority": "low", "id": 2})).await;
    received
        .wait_for("both orders", |r| {
            r.count("/orders/urgent", &json!({"priority": "high", "id": 1})) == 1
                && r.count("/orders", &json!({"priority": "low", "id": 2})) == 1
        })
        .await;
    let (_, headers, event) = received.events().into_iter().next().expect("an event");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/cloudevents+json")
    );
    assert_eq!(
        headers.get("pubsubname").and_then(|v| v.to_str().ok()),
        Some("pubsub")
    );
    assert_eq!(event["source"], "orders-app");
    assert_eq!(event["type"], "com.dapr.event.sent");
    assert_eq!(event["topic"], "orders");
    assert_eq!(event["specversion"], "1.0");

    for answer in ["retry-once", "fail-once"] {
        let data = json!({"answer": answer});
        publish(&base, "jobs", data.clone()).await;
        received
            .wait_for(answer, |r| r.count("/jobs", &data) == 2)
            .await;
    }
    for answer in ["drop", "gone"] {
        let data = json!({"answer": answer});
        publish(&base, "jobs", data.clone()).await;
        received
            .wait_for(&format!("{answer} goes to the dead-letter topic"), |r| {
                r.count("/dead", &data) == 1
            })
            .await;
        assert_eq!(
            received.count("/jobs", &data),
            1,
            "{answer}: not redelivered"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received.count("/jobs", &json!({"answer": "retry-once"})),
        2,
        "acked after the retry, then never again"
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn declarative_subscription_and_waiting_for_a_late_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("pubsub.yaml"),
        memory_component("pubsub").replace("state.in-memory", "pubsub.in-memory"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("subscription.yaml"),
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: audit\nspec:\n  pubsubname: pubsub\n  topic: audit\n  routes:\n    default: /audit\nscopes:\n- late-app\n",
    )
    .expect("write");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("reserve a port");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let mut config = config_with_resources("late-app", dir.path());
    config.app_port = Some(port);
    let sidecar = start(config).await;
    let base = http_base(&sidecar);
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/v1.0/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        reqwest::StatusCode::INTERNAL_SERVER_ERROR,
        "not ready while the app is down"
    );
    assert_eq!(
        http.get(format!("{base}/v1.0/healthz/outbound"))
            .send()
            .await
            .expect("outbound")
            .status(),
        reqwest::StatusCode::NO_CONTENT,
        "the sidecar's own APIs are ready"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = Received::default();
    serve(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind app"),
        received.clone(),
    )
    .await;
    assert!(
        outrigger_e2e::wait_until_app_ready(&base, Duration::from_secs(10)).await,
        "healthz never became ready"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&base, "audit", json!({"who": "me"})).await;
    received
        .wait_for("the declarative subscription delivers", |r| {
            r.count("/audit", &json!({"who": "me"})) == 1
        })
        .await;

    // Hot reload: a new Subscription file takes effect without a restart.
    std::fs::write(
        dir.path().join("more.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: more\nspec:\n  pubsubname: pubsub\n  topic: more\n  route: /more\n",
    )
    .expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.count("/more", &json!({"n": 1})) == 0 {
        assert!(Instant::now() < deadline, "the new subscription delivers");
        publish(&base, "more", json!({"n": 1})).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sidecar.shutdown().await;
}
