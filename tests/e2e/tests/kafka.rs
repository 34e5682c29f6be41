//! Kafka through real sidecar processes and a real Kafka-protocol broker (tansu): pub/sub
//! delivery to the app, the Kafka binding in both directions, and redelivery of an event whose
//! delivery was cut off by SIGKILL (its offset was never committed).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use outrigger_test_harness::{KafkaBroker, Sidecar, SidecarBuilder};
use serde_json::json;

#[derive(Clone, Default)]
struct App {
    /// (route, data) of every delivery.
    received: Arc<Mutex<Vec<(String, String)>>>,
    hang: Arc<Mutex<bool>>,
}

impl App {
    fn count(&self, route: &str, data: &str) -> usize {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .filter(|(r, d)| r == route && d == data)
            .count()
    }

    async fn wait_for(&self, what: &str, check: impl Fn(&Self) -> bool) {
        // Generous: a consumer group rebalance after a kill waits out the session timeout.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.received.lock().expect("lock")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve_app(app: App) -> u16 {
    async fn receive(
        State(app): State<App>,
        Path(route): Path<String>,
        body: String,
    ) -> &'static str {
        let data = outrigger_e2e::event_data(body);
        app.received.lock().expect("lock").push((route, data));
        let hang = *app.hang.lock().expect("lock");
        if hang {
            std::future::pending::<()>().await;
        }
        ""
    }
    let router = Router::new()
        .route(
            "/dapr/subscribe",
            get(|| async {
                axum::Json(json!([{"pubsubname": "events", "topic": "orders", "route": "/orders"}]))
            }),
        )
        .route("/{route}", post(receive))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, router).await.expect("app") });
    port
}

fn components(broker: &KafkaBroker) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = broker.address();
    std::fs::write(
        dir.path().join("events.yaml"),
        format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: events\nspec:\n  type: pubsub.kafka\n  version: v1\n  metadata:\n  - name: brokers\n    value: \"{brokers}\"\n  - name: initialOffset\n    value: oldest\n  - name: sessionTimeout\n    value: 6s\n"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("stream.yaml"),
        format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: stream\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n  - name: brokers\n    value: \"{brokers}\"\n  - name: topics\n    value: ingest\n  - name: publishTopic\n    value: ingest\n  - name: consumerGroup\n    value: stream-readers\n  - name: initialOffset\n    value: oldest\n"),
    )
    .expect("write");
    dir
}

async fn start_sidecar(dir: &tempfile::TempDir, app_port: u16) -> Sidecar {
    outrigger_e2e::spawn_with_app(
        SidecarBuilder::new("kafka-app").resources_path(dir.path()),
        app_port,
    )
    .await
}

async fn send(
    sidecar: &Sidecar,
    path: &str,
    content_type: &str,
    body: &str,
) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(sidecar.http_url(path))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("request")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_pubsub_and_binding_with_redelivery_after_sigkill() {
    let broker = KafkaBroker::start().expect("tansu broker");
    let dir = components(&broker);
    let app = App::default();
    let port = serve_app(app.clone()).await;
    let mut sidecar = start_sidecar(&dir, port).await;

    assert_eq!(
        send(
            &sidecar,
            "/v1.0/publish/events/orders",
            "text/plain",
            "first"
        )
        .await,
        reqwest::StatusCode::NO_CONTENT
    );
    app.wait_for("the published event", |app| {
        app.count("orders", "first") == 1
    })
    .await;
    let invoke = send(
        &sidecar,
        "/v1.0/bindings/stream",
        "application/json",
        r#"{"operation":"create","data":"from-binding"}"#,
    )
    .await;
    assert_eq!(invoke, reqwest::StatusCode::NO_CONTENT);
    app.wait_for("the binding round trip", |app| {
        app.count("stream", "from-binding") == 1
    })
    .await;
    let unsupported = send(
        &sidecar,
        "/v1.0/bindings/stream",
        "application/json",
        r#"{"operation":"delete"}"#,
    )
    .await;
    assert_eq!(unsupported, reqwest::StatusCode::BAD_REQUEST);

    // The app is busy when the sidecar dies: the offset is not committed.
    *app.hang.lock().expect("lock") = true;
    assert_eq!(
        send(
            &sidecar,
            "/v1.0/publish/events/orders",
            "text/plain",
            "cut-off"
        )
        .await,
        reqwest::StatusCode::NO_CONTENT
    );
    app.wait_for("the delivery that gets cut off", |app| {
        app.count("orders", "cut-off") == 1
    })
    .await;
    sidecar.signal("KILL");
    sidecar.wait_exit(Duration::from_secs(10)).expect("killed");
    *app.hang.lock().expect("lock") = false;
    let restarted = start_sidecar(&dir, port).await;
    app.wait_for("redelivery after restart", |app| {
        app.count("orders", "cut-off") >= 2
    })
    .await;
    assert_eq!(
        app.count("orders", "first"),
        1,
        "a committed event is not delivered again"
    );
    drop(restarted);
}
